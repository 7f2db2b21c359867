"""patient key on studies; receipt conflicts (instances refused because of whose they are)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 12:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('patient_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('patient_issuer_key', sa.String(length=64), nullable=True))
    op.create_table(
        'receipt_conflicts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
        sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
        sa.Column('study_id', sa.Integer(), nullable=True),
        sa.Column('calling_aet', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['study_id'], ['studies.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('receipt_conflicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_receipt_conflicts_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_receipt_conflicts_kind'), ['kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('receipt_conflicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_receipt_conflicts_kind'))
        batch_op.drop_index(batch_op.f('ix_receipt_conflicts_at'))
    op.drop_table('receipt_conflicts')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('patient_issuer_key')
        batch_op.drop_column('patient_key')
