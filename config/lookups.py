"""`field__any=[...]`: `field = ANY(%s)` with the whole list as one array parameter.

`field__in` spells out one placeholder per value; with the thousands of accounts of a copy
fan-out, building and parsing that statement costs more than running it.

An integer list is cast to the column's own integer type. Left to the driver it becomes int2[]
or int4[] for small ids, and PostgreSQL then cannot hash the list: where `= ANY` ends up as a
filter rather than an index condition, every row is compared with every value (10,000 positions
against 10,000 accounts: 450 ms instead of 6). Other types are left alone: a cast to varchar(10)
or numeric(12, 6) would cut or round the values and match rows that `__in` does not.
"""
from django.db.models import Field, ForeignObject, IntegerField, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_db_prep_lookup(self, value, connection):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise TypeError(f"__any takes a list of values, not {type(value).__name__}")
        field = self.lhs.output_field
        return "%s", [[field.get_db_prep_value(getattr(v, "pk", v), connection, prepared=False) for v in value]]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        field = self.lhs.output_field
        if isinstance(getattr(field, "target_field", field), IntegerField):  # a foreign key compares as its target
            rhs = f"{rhs}::{field.cast_db_type(connection)}[]"
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # related fields keep their own lookups
