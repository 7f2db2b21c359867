"""association audit: the protocol of each row (DIMSE association or DICOMweb STOW-RS request)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('associations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('protocol', sa.String(length=16), nullable=False, server_default='dimse'))


def downgrade() -> None:
    with op.batch_alter_table('associations', schema=None) as batch_op:
        batch_op.drop_column('protocol')
