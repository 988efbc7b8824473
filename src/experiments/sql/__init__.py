"""The one place that runs untrusted SQL: WikiSQL tables in SQLite, safe SQL, the killable sandbox, its errors."""
