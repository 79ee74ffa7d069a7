from fecsearch.cli import main

main()
