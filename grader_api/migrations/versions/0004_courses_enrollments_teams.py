"""courses, enrollments, invites and teams

Revision ID: 0004
Revises: 0003
Every existing task and user moves into one course, `default`: each user is enrolled there with
the role they had (`users.role` is kept as it was) and a display name `user-<id>` they can change.
Task names become unique per course instead of server-wide. Nothing is dropped.
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table('courses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('slug')
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))

    op.create_table('enrollments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.Enum('student', 'ta', 'instructor', name='role', native_enum=False, length=16),
              nullable=False),
    sa.Column('status', sa.Enum('active', 'dropped', name='enrollment_status', native_enum=False, length=16),
              nullable=False),
    sa.Column('display_name', sa.String(length=40), nullable=False),
    sa.Column('display_key', sa.String(length=40), nullable=False),
    sa.Column('section', sa.String(length=100), nullable=True),
    sa.Column('lms_id', sa.String(length=64), nullable=True),
    sa.Column('sis_user_id', sa.String(length=100), nullable=True),
    sa.Column('sis_login_id', sa.String(length=100), nullable=True),
    sa.Column('created_at', _UTC, nullable=False),
    sa.Column('updated_at', _UTC, nullable=False),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('course_id', 'display_key', name='uq_enrollments_course_display'),
    sa.UniqueConstraint('course_id', 'user_id', name='uq_enrollments_course_user')
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollments_user_id'), ['user_id'], unique=False)

    op.create_table('invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.Column('expires_at', _UTC, nullable=False),
    sa.Column('used_at', _UTC, nullable=True),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_hash')
    )
    with op.batch_alter_table('invites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invites_enrollment_id'), ['enrollment_id'], unique=False)

    # Everything that exists goes into the default course, everyone with the role they had.
    bind.execute(sa.text("INSERT INTO courses (slug, title, timezone, created_at) "
                         "VALUES ('default', 'Default course', 'UTC', CURRENT_TIMESTAMP)"))
    course_id = bind.execute(sa.text("SELECT id FROM courses WHERE slug = 'default'")).scalar_one()
    bind.execute(sa.text(
        "INSERT INTO enrollments (course_id, user_id, role, status, display_name, display_key, created_at, updated_at) "
        "SELECT :course, id, role, 'active', 'user-' || CAST(id AS VARCHAR(20)), 'user-' || CAST(id AS VARCHAR(20)), "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM users"), {"course": course_id})

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('course_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('team_size', sa.Integer(), nullable=False, server_default='1'))
    bind.execute(sa.text("UPDATE tasks SET course_id = :course"), {"course": course_id})
    # SQLite's copy of the table has an unnamed unique constraint on name: the naming convention
    # lets batch mode find it; PostgreSQL named it tasks_name_key.
    unique_name = 'uq_tasks_name' if bind.dialect.name == 'sqlite' else 'tasks_name_key'
    with op.batch_alter_table('tasks', schema=None,
                              naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}) as batch_op:
        batch_op.alter_column('course_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('team_size', existing_type=sa.Integer(), server_default=None)
        batch_op.drop_constraint(unique_name, type_='unique')
        batch_op.create_unique_constraint('uq_tasks_course_name', ['course_id', 'name'])
        batch_op.create_index(batch_op.f('ix_tasks_course_id'), ['course_id'], unique=False)
        batch_op.create_foreign_key('fk_tasks_course_id_courses', 'courses', ['course_id'], ['id'],
                                    ondelete='RESTRICT')

    op.create_table('teams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('name_key', sa.String(length=40), nullable=False),
    sa.Column('join_code', sa.String(length=32), nullable=False),
    sa.Column('created_at', _UTC, nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('join_code'),
    sa.UniqueConstraint('task_id', 'name_key', name='uq_teams_task_name')
    )
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_teams_task_id'), ['task_id'], unique=False)

    op.create_table('team_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('joined_at', _UTC, nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('task_id', 'user_id', name='uq_team_members_task_user')
    )
    with op.batch_alter_table('team_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_members_team_id'), ['team_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_team_members_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    """Back to one server-wide course: refused while a second course exists (its tasks could clash
    by name and its enrollments would be lost)."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT COUNT(*) FROM courses")).scalar_one() > 1:
        raise RuntimeError("more than one course exists: downgrading would merge them; refused")
    op.drop_table('team_members')
    op.drop_table('teams')
    unique_name = 'uq_tasks_name' if bind.dialect.name == 'sqlite' else 'tasks_name_key'
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_constraint('fk_tasks_course_id_courses', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_tasks_course_id'))
        batch_op.drop_constraint('uq_tasks_course_name', type_='unique')
        batch_op.create_unique_constraint(unique_name, ['name'])
        batch_op.drop_column('team_size')
        batch_op.drop_column('course_id')
    op.drop_table('invites')
    op.drop_table('enrollments')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email')
        batch_op.drop_column('full_name')
    op.drop_table('courses')
