-- Grants (X2): an actor's permission on a namespace or a collection.

CREATE TABLE grants (
    id          BLOB PRIMARY KEY,
    namespace   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    permission  TEXT NOT NULL,
    scope_kind  TEXT NOT NULL,
    scope_name  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (namespace, actor, permission, scope_kind, scope_name)
) STRICT;
