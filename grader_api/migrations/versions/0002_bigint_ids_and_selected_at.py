"""64-bit submission and outbox ids; when a submission was selected as final

Revision ID: 0002
Revises: 0001
Submissions and their outbox messages are created without bound, so their ids (and the
foreign key between them) become BIGINT on PostgreSQL, existing rows carried over by
ALTER COLUMN TYPE, and their sequences are widened too (a sequence keeps its own type and
maximum). SQLite needs no change: its INTEGER PRIMARY KEY is already a 64-bit rowid.
`submissions.selected_at` records when a submission was marked final; rows marked before
this revision keep NULL (time unknown).
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# (table, column, has its own sequence)
_WIDENED = (('submissions', 'id', True), ('outbox', 'id', True), ('outbox', 'submission_id', False))


def _set_id_types(new: sa.types.TypeEngine, old: sa.types.TypeEngine, sequence_type: str) -> None:
    bind = op.get_bind()
    for table, column, has_sequence in _WIDENED:
        op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=False)
        if has_sequence:
            sequence = bind.scalar(sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column})
            if sequence:
                # pg_get_serial_sequence returns the name already quoted where needed.
                op.execute(f"ALTER SEQUENCE {sequence} AS {sequence_type}")


def upgrade() -> None:
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('selected_at', sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        _set_id_types(sa.BigInteger(), sa.Integer(), 'bigint')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        _set_id_types(sa.Integer(), sa.BigInteger(), 'integer')
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_column('selected_at')
