"""leases for jobs, reports and deliveries; destinations by name; content digests for resends

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_key', sa.String(length=64), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('queued_at', sa.DateTime(), nullable=False, server_default=sa.func.current_timestamp()))
        batch_op.create_index(batch_op.f('ix_deliveries_destination'), ['destination'], unique=False)
        batch_op.drop_column('ae_title')
        batch_op.drop_column('host')
        batch_op.drop_column('port')


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('port', sa.Integer(), nullable=False, server_default='104'))
        batch_op.add_column(sa.Column('host', sa.String(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('ae_title', sa.String(length=16), nullable=False, server_default=''))
        batch_op.drop_index(batch_op.f('ix_deliveries_destination'))
        batch_op.drop_column('queued_at')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_column('content_key')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('generation')
        batch_op.drop_column('lease_until')
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('generation')
        batch_op.drop_column('digest')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('lease_owner')
