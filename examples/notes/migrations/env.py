"""Alembic environment of the notes app: online, on the app's database, with autogenerate
comparing the mapped collections (models.Base.metadata) to sparsesql's catalog."""

from alembic import context
from sqlalchemy import create_engine

import sparsesql.migrations  # noqa: F401  (registers op.create_collection & co. and autogenerate)
from models import Base
from sparsesql.orm import database_url

config = context.config


def run_migrations_online() -> None:
    engine = create_engine(database_url())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
