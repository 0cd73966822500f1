-- Immutable commission program versions; version 1 is inserted by the application.
CREATE TABLE program_versions (
    version BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    body LONGTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
