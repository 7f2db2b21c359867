"""association audit and per-window TTA views

An ``associations`` table (one row per DICOM association: calling AE, peer, time, instances,
outcome) for ``GET /associations``, and the two TTA views per grid window of each keyframe
(``frame_scores.window_original`` / ``window_flipped``) for the dashboard's TTA agreement.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'associations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('calling_aet', sa.String(length=16), nullable=False),
        sa.Column('called_aet', sa.String(length=16), nullable=False),
        sa.Column('peer_address', sa.String(length=255), nullable=False),
        sa.Column('peer_port', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('ended_at', sa.DateTime(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('instances_stored', sa.Integer(), nullable=False),
        sa.Column('instances_refused', sa.Integer(), nullable=False),
        sa.Column('bytes_received', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('associations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_associations_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_associations_outcome'), ['outcome'], unique=False)
    with op.batch_alter_table('frame_scores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('window_original', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('window_flipped', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('frame_scores', schema=None) as batch_op:
        batch_op.drop_column('window_flipped')
        batch_op.drop_column('window_original')
    with op.batch_alter_table('associations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_associations_outcome'))
        batch_op.drop_index(batch_op.f('ix_associations_started_at'))
    op.drop_table('associations')
