"""Reference data: countries, currencies, voucher categories and subcategories (contract 4)."""

from peewee import BooleanField, CharField, IntegerField

from octopus_cards.models.base import BaseModel


class ReferenceModel(BaseModel):
    """Rows clients read but never write; inactive rows are invisible to them."""

    is_active = BooleanField(default=True)

    PUBLIC_FIELDS = ()

    @classmethod
    def active(cls):
        """Every active row as a dict of its public fields, by id."""
        fields = [cls.id] + [getattr(cls, name) for name in cls.PUBLIC_FIELDS]
        return list(cls.select(*fields).where(cls.is_active).order_by(cls.id).dicts())


class Country(ReferenceModel):
    name = CharField()
    official_name = CharField()
    alpha_2 = CharField(max_length=2, unique=True)
    alpha_3 = CharField(max_length=3, unique=True)
    numeric_code = CharField(max_length=3)
    dialing_prefix = CharField()

    PUBLIC_FIELDS = ("name", "official_name", "alpha_2", "alpha_3", "numeric_code", "dialing_prefix")


class Currency(ReferenceModel):
    name = CharField()
    currency = CharField(max_length=3, unique=True)
    precision = IntegerField()

    PUBLIC_FIELDS = ("name", "currency", "precision")


class Category(ReferenceModel):
    name = CharField()

    PUBLIC_FIELDS = ("name",)


class Subcategory(ReferenceModel):
    name = CharField()

    PUBLIC_FIELDS = ("name",)
