"""One date format on every page, the admin's included: 2026-12-06 14:05:09 (ISO 8601 order,
24-hour clock), as the dashboard tables and chart axes print it."""
