import pytest

from dashboard.settings import database_from_url

pytestmark = pytest.mark.unit


def test_database_url_is_parsed_into_django_settings():
    db = database_from_url("postgres://ann:s%40cret@db.example:6543/tasks?sslmode=require")
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "tasks",
        "ann",
        "s@cret",
        "db.example",
        "6543",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_a_non_postgres_url_is_refused():
    with pytest.raises(ValueError, match="must start with postgres://"):
        database_from_url("mysql://root@localhost/x")
