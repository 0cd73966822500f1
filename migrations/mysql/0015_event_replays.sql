-- Every operator replay of an event, with the status it had then.
CREATE TABLE event_replays (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id CHAR(36) CHARACTER SET ascii NOT NULL,
    at DATETIME(6) NOT NULL,
    previous_status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    KEY ix_event_replays_event (event_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
