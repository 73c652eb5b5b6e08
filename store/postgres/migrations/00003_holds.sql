-- linkbot's PostgreSQL schema, version 3: Slack's Retry-After holds
-- (issue 9 review), so that a restarted bot, or a replica starting meanwhile, does not
-- call Slack while one runs.
--
-- Expand only: it adds one table and changes nothing versions 1 and 2
-- read or write, so an older linkbot goes on running beside one that ran
-- this (it simply keeps its holds in memory).

-- +goose Up

-- A Web API method's hold ("chat.update", "chat.postMessage U123"): no
-- call before until_ns (the caller's clock, as the limits' windows).
CREATE TABLE slack_holds (
    key      text PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 300),
    until_ns bigint NOT NULL
);

-- +goose Down
DROP TABLE slack_holds;
