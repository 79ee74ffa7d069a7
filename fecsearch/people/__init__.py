"""Who is in the pictures: identity descriptors for indexed faces, people found by clustering them,
and the identity filters of expression search (one person's faces, or everyone but the query's)."""
