-- The service's first table: lets the pipeline prove migrations run against a real server.
CREATE TABLE service_events (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT        NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
