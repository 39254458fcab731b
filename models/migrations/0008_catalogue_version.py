"""The catalogue version: one row whose number moves with every change to what a voucher product
list shows, so that each server process may keep encoded lists as long as the number stands."""

from peewee import BigIntegerField, Model


def up(migrator, db):
    # A frozen copy of the schema as it was: later model changes must not alter this step.
    class CatalogueVersion(Model):
        version = BigIntegerField()

        class Meta:
            database = db
            legacy_table_names = False

    db.create_tables([CatalogueVersion])
    CatalogueVersion.insert(id=1, version=1).execute()
