"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json.

Kept true by tests/api/test_openapi.py: the document is validated, and Schemathesis calls
every operation on a live server and checks each answer against it.
"""

from __future__ import annotations

NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}

RUN = {
    "type": "object",
    "required": ["id", "task", "trigger", "status", "started_at"],
    "properties": {
        "id": {"type": "integer"},
        "task": {"type": "string"},
        "trigger": {"type": "string", "enum": ["manual", "scheduled", "catch-up", "restore"]},
        "status": {"type": "string", "enum": ["running", "success", "warning", "failed", "interrupted", "missed"]},
        "scheduled_for": NULLABLE_TIME,
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": NULLABLE_TIME,
        "duration_ms": {"type": ["integer", "null"]},
        "phase": {"type": ["string", "null"]},
        "progress": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
        "error": {"type": ["string", "null"]},
        "file": {"type": ["string", "null"]},
        "size": {"type": ["integer", "null"]},
        "sha256": {"type": ["string", "null"]},
        "detail": {"type": ["string", "null"]},
    },
}
# A 409 names the running run; "id" is null only when the lock holder recorded no run.
BUSY = {
    "type": "object",
    "required": ["error", "running"],
    "properties": {
        "error": {"type": "string"},
        "running": {
            "type": "object",
            "required": ["id", "task", "status"],
            "properties": {
                "id": {"type": ["integer", "null"]},
                "task": {"type": "string"},
                "status": {"const": "running"},
            },
        },
    },
}
SCHEDULE = {
    "type": "object",
    "required": ["mode"],
    "properties": {
        "mode": {"type": "string", "enum": ["disabled", "daily", "weekly", "cron", "interval"]},
        "time": {"type": ["string", "null"], "description": "HH:MM, 24-hour, ASCII digits"},
        "weekdays": {
            "type": ["array", "null"],
            "items": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
        },
        "cron": {"type": ["string", "null"], "description": "minute hour day-of-month month day-of-week"},
        "every_hours": {"type": ["integer", "null"], "minimum": 1, "maximum": 168},
    },
}
JOB = {
    "type": "object",
    "required": ["id", "schedule", "description", "timezone", "next_run_at", "last_run", "running"],
    "properties": {
        "id": {"type": "string"},
        "schedule": SCHEDULE,
        "description": {"type": "string"},
        "timezone": {"type": "string"},
        "next_run_at": NULLABLE_TIME,
        "upcoming": {"type": "array", "items": {"type": "string", "format": "date-time"}},
        "pending_apply": {"type": "boolean"},
        "overdue": {"type": "boolean"},
        "last_run": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Run"}]},
        "running": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Run"}]},
    },
}
BACKUP = {
    "type": "object",
    "required": ["file", "size", "created_at", "kind"],
    "properties": {
        "file": {"type": "string"},
        "size": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "kind": {"type": "string", "enum": ["manual", "auto", "uploaded", "pre-restore"]},
        "sha256": {"type": ["string", "null"]},
        "verified_at": NULLABLE_TIME,
        "damaged": {"type": ["string", "null"]},
        "here": {
            "type": "boolean",
            "description": "False: the file is in another host's BACKUPS_DIR (see host); download it there.",
        },
        "host": {"type": ["string", "null"], "description": "HOST_NAME of the host whose folder received it."},
        "duration_ms": {"type": "integer"},
        "run_id": {"type": "integer"},
        "status": {"type": "string", "enum": ["success", "warning"]},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "detail": {"type": ["string", "null"]},
    },
}
FIELD_ERRORS = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    },
}


def _json(schema: dict | str, description: str) -> dict:
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Answers every operation may give: no login (401), a cross-site browser request (403),
# scheduling switched off (404 on scheduler routes), the database busy (503).
COMMON = {
    "401": _json("Error", "Authentication required (ADMIN_PASSWORD is set)."),
    "403": _json("Error", "A cross-site browser request."),
    "503": _json("Error", "The database is busy."),
}
SCHEDULER_OFF = {"404": _json("Error", "Scheduling is turned off (SCHEDULER_ENABLED=false).")}


NO_TASK = {"404": _json("Error", "No task of that name, or scheduling is turned off (SCHEDULER_ENABLED=false).")}
TASK_PARAMETER = {
    "name": "task_name",
    "in": "path",
    "required": True,
    "description": "A task id (backup_db, verify_backups), or backup for backup_db.",
    "schema": {"type": "string"},
}
NAME_PARAMETER = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The exact name of a listed backup.",
    "schema": {"type": "string"},
}
OBJECT = {"type": "object"}


def _operation(operation_id: str, summary: str, responses: dict, **extra) -> dict:
    return {"operationId": operation_id, "summary": summary, "responses": {**responses, **COMMON}, **extra}


TARGET_PARAMETER = {
    "name": "target_id",
    "in": "path",
    "required": True,
    "description": "An off-site target's id.",
    "schema": {"type": "integer"},
}
NO_TARGET = {"404": _json("Error", "No target with that id.")}
JSON_BODY = {"required": True, "content": {"application/json": {"schema": OBJECT}}}
TARGET_SAVED = {
    "400": _json("FieldErrors", "Refused; nothing saved."),
    "413": _json("Error", "The body is too large."),
}
# Off-site targets (DESIGN.md section 9): secrets are never part of an answer.
OFFSITE_PATHS = {
    "/settings/offsite": {
        "get": _operation("listOffsiteTargets", "Off-site targets, secrets masked", {"200": _json(OBJECT, "Targets.")}),
        "post": _operation(
            "addOffsiteTarget",
            "Add an S3-compatible target (checked; secrets never answered)",
            {"201": _json(OBJECT, "The target, masked."), **TARGET_SAVED},
            requestBody=JSON_BODY,
        ),
    },
    "/settings/offsite/{target_id}": {
        "parameters": [TARGET_PARAMETER],
        "put": _operation(
            "changeOffsiteTarget",
            "Change a target; a field left out keeps its value (secrets included)",
            {"200": _json(OBJECT, "The target, masked."), **TARGET_SAVED, **NO_TARGET},
            requestBody=JSON_BODY,
        ),
        "delete": _operation(
            "deleteOffsiteTarget",
            "Forget a target (its remote copies stay)",
            {"200": _json(OBJECT, "Deleted."), **NO_TARGET},
        ),
    },
    "/settings/offsite/{target_id}/test": {
        "parameters": [TARGET_PARAMETER],
        "post": _operation(
            "testOffsiteTarget",
            "Write, read back and delete a small object",
            {"200": _json(OBJECT, "ok and message, either way."), **NO_TARGET},
        ),
    },
    "/settings/offsite/{target_id}/copies": {
        "parameters": [TARGET_PARAMETER],
        "get": _operation(
            "listOffsiteCopies",
            "The sealed copies under the target's prefix",
            {
                "200": _json(OBJECT, "The copies, newest first."),
                "502": _json("Error", "The storage server failed."),
                **NO_TARGET,
            },
        ),
    },
    "/settings/offsite/{target_id}/copies/fetch": {
        "parameters": [TARGET_PARAMETER],
        "post": _operation(
            "fetchOffsiteCopy",
            "Download, check and open a copy with the key sent (never stored); keep it as an uploaded backup",
            {
                "201": _json("Backup", "The backup it became; restore it as any other."),
                "400": _json("Error", "The key does not open it, or a check failed."),
                "413": _json("Error", "The body is too large."),
                **NO_TARGET,
            },
            requestBody=JSON_BODY,
        ),
    },
}


def openapi_document() -> dict:
    """The whole description (the server URL is relative: wherever this document was fetched)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backups API",
            "version": "1",
            "description": "Scheduled, verified SQLite backups. Times are ISO 8601 with an offset; "
            "the zone is named in `timezone`. With a password set, send `Authorization: Bearer <API_TOKEN>`.",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": {
                "Error": ERROR,
                "Run": RUN,
                "Busy": BUSY,
                "Schedule": SCHEDULE,
                "Job": JOB,
                "Backup": BACKUP,
                "FieldErrors": FIELD_ERRORS,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/settings/backup-db": {
                "post": _operation(
                    "backupNow",
                    "A manual backup, synchronously",
                    {
                        "200": _json("Backup", "The backup, verified."),
                        "409": _json("Busy", "A backup is already running."),
                        "500": _json("Error", "The backup failed."),
                        "507": _json("Error", "The backup folder cannot hold backups."),
                    },
                )
            },
            "/settings/backups": {
                "get": _operation(
                    "listBackups",
                    "The backup files, newest first",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["backups"],
                                "properties": {
                                    "backups": {"type": "array", "items": {"$ref": "#/components/schemas/Backup"}}
                                },
                            },
                            "The backups.",
                        )
                    },
                ),
                "post": _operation(
                    "uploadBackup",
                    "Upload a backup (checked; kept as kind uploaded)",
                    {
                        "201": _json("Backup", "Kept: it passed every check."),
                        "400": _json("Error", "Not a restorable SQLite file; nothing kept."),
                        "413": _json("Error", "Larger than MAX_UPLOAD_MB; nothing kept."),
                        "507": _json("Error", "The backup folder cannot hold it."),
                    },
                    requestBody={
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {"file": {"type": "string", "format": "binary"}},
                                }
                            }
                        },
                    },
                ),
            },
            "/settings/backups/{name}": {
                "parameters": [NAME_PARAMETER],
                "get": _operation(
                    "downloadBackup",
                    "Download one backup",
                    {
                        "200": {
                            "description": "The file, as an attachment.",
                            "content": {"application/vnd.sqlite3": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "404": _json("Error", "No backup of that name."),
                    },
                ),
                "delete": _operation(
                    "deleteBackup",
                    "Delete one backup",
                    {
                        "200": _json({"type": "object", "required": ["deleted"]}, "Deleted."),
                        "404": _json("Error", "No backup of that name."),
                    },
                ),
            },
            "/settings/backups/{name}/restore": {
                "parameters": [NAME_PARAMETER],
                "post": _operation(
                    "restoreBackup",
                    "Restore a backup in the background, after a verified safety backup",
                    {
                        "202": _json(
                            {
                                "type": "object",
                                "required": ["run"],
                                "properties": {"run": {"$ref": "#/components/schemas/Run"}},
                            },
                            "Started; follow it at /settings/scheduler/runs/{id}.",
                        ),
                        "400": _json("Error", "The body does not confirm with the exact name."),
                        "404": _json("Error", "No backup of that name."),
                        "409": _json("Busy", "A backup or a restore is going."),
                    },
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["confirm"],
                                    "properties": {"confirm": {"type": "string"}},
                                }
                            }
                        },
                    },
                ),
            },
            "/settings/notifications": {
                "get": _operation(
                    "getNotifications", "Notification settings (URLs masked)", {"200": _json(OBJECT, "The settings.")}
                ),
                "put": _operation(
                    "setNotifications",
                    "Save notification URLs, events and the ping URL",
                    {
                        "200": _json(OBJECT, "The settings, as saved."),
                        "400": _json("FieldErrors", "Refused; nothing saved."),
                        "413": _json("Error", "The body is too large."),
                    },
                    requestBody={"required": True, "content": {"application/json": {"schema": OBJECT}}},
                ),
            },
            "/settings/notifications/test": {
                "post": _operation(
                    "testNotifications",
                    "Send a test message to every saved URL",
                    {"200": _json(OBJECT, "One result per URL."), "400": _json("Error", "No URL is saved.")},
                )
            },
            **OFFSITE_PATHS,
            "/settings/scheduler": {
                "get": _operation(
                    "schedulerStatus",
                    "Schedules, scheduler status and history",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["timezone", "scheduler", "jobs", "history", "sqlite_version"],
                                "properties": {
                                    "timezone": {"type": "string"},
                                    "scheduler": {"type": "object", "required": ["enabled", "running"]},
                                    "sqlite_version": {"type": "string"},
                                    "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                                    "history": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                                },
                            },
                            "The status.",
                        ),
                        **SCHEDULER_OFF,
                    },
                )
            },
            "/settings/scheduler/{task_name}": {
                "parameters": [TASK_PARAMETER],
                "post": _operation(
                    "setTaskSchedule",
                    "Create or update a task's schedule (only the chosen mode's fields are needed)",
                    {
                        "200": _json("Job", "The job, as saved."),
                        "400": _json("FieldErrors", "Refused; nothing changed."),
                        **NO_TASK,
                    },
                    requestBody={
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Schedule"}}},
                    },
                ),
                "delete": _operation(
                    "deleteTaskSchedule",
                    "Remove a task's schedule (the mode becomes disabled)",
                    {"200": _json("Job", "The job, disabled."), **NO_TASK},
                ),
            },
            "/settings/scheduler/{task_name}/run": {
                "parameters": [TASK_PARAMETER],
                "post": _operation(
                    "runTaskNow",
                    "Start a run of the task in the background",
                    {
                        "202": _json(
                            {
                                "type": "object",
                                "required": ["run"],
                                "properties": {"run": {"$ref": "#/components/schemas/Run"}},
                            },
                            "Started; follow it at /settings/scheduler/runs/{id}.",
                        ),
                        "409": _json("Busy", "A run of this task (or a restore, for the backup task) is going."),
                        **NO_TASK,
                    },
                ),
            },
            "/settings/scheduler/runs/{run_id}": {
                "get": _operation(
                    "getRun",
                    "One run",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["run"],
                                "properties": {"run": {"$ref": "#/components/schemas/Run"}},
                            },
                            "The run.",
                        ),
                        "404": _json("Error", "No such run (or scheduling is off)."),
                    },
                    parameters=[{"name": "run_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                )
            },
            "/settings/scheduler/jobs": {
                "get": _operation(
                    "schedulerJobs",
                    "The job store's jobs, for debugging",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["jobs", "timezone"],
                                "properties": {
                                    "timezone": {"type": "string"},
                                    "jobs": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "func", "stored", "next_run_time"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "func": {"type": "string"},
                                                "stored": {"type": "boolean"},
                                                "next_run_time": NULLABLE_TIME,
                                            },
                                        },
                                    },
                                },
                            },
                            "The jobs.",
                        ),
                        **SCHEDULER_OFF,
                    },
                )
            },
        },
        "security": [{}, {"bearer": []}],
    }
