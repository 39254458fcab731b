"""Logout by generation: a client's counter, and the value each family was issued under."""

from peewee import IntegerField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("client", "token_generation", IntegerField(default=0)),
        migrator.add_column("token_family", "generation", IntegerField(default=0)),
    )
