-- IDE plane, migration 0004: lightweight status state for IDE surfaces (status bar,
-- panels): one row per component, overwritten in place (INSERT ... ON CONFLICT DO UPDATE).

-- zeroui-class: ide/ide_status: current status per IDE component (state, short message, last change) for status bar and panels
CREATE TABLE ide_status (
    component  TEXT PRIMARY KEY CHECK (component GLOB '[a-z]*' AND component NOT GLOB '*[^a-z0-9_.-]*'
                                       AND length(component) <= 64),   -- e.g. 'sync', 'policy', 'outbox'
    state      TEXT NOT NULL DEFAULT 'unknown' CHECK (state IN ('ok', 'degraded', 'error', 'offline', 'unknown')),
    message    TEXT CHECK (length(message) <= 500),     -- short, for the status bar tooltip
    details    TEXT CHECK (details IS NULL OR json_valid(details)),  -- small JSON for panels (counts, last ids)
    last_ok_at TEXT CHECK (last_ok_at IS strftime('%Y-%m-%dT%H:%M:%fZ', last_ok_at)),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
               CHECK (updated_at IS strftime('%Y-%m-%dT%H:%M:%fZ', updated_at))
) STRICT;

INSERT INTO ide_status (component) VALUES ('sync'), ('policy'), ('outbox');
