-- Every failed attempt of an event, with its error, for the admin API.
CREATE TABLE event_attempts (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id CHAR(36) CHARACTER SET ascii NOT NULL,
    at DATETIME(6) NOT NULL,
    error TEXT NOT NULL,
    KEY ix_event_attempts_event (event_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
