"""report retries: a study remembers failed attempts to write its SR

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 19:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('report_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('report_due_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('report_due_at')
        batch_op.drop_column('report_error')
        batch_op.drop_column('report_attempts')
