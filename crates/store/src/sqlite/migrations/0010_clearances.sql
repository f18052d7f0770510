-- Clearances (X2): the highest classification an actor may read.

CREATE TABLE clearances (
    namespace TEXT NOT NULL,
    actor     TEXT NOT NULL,
    level     TEXT NOT NULL,
    set_at    INTEGER NOT NULL,
    PRIMARY KEY (namespace, actor)
) STRICT, WITHOUT ROWID;
