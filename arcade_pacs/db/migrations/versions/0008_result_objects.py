"""result objects: a report's SR, result images (SC) and presentation states (GSPS); deliveries name one

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 14:00:00

Every existing report gets one ``sr`` object (its SR, same UID and file), and each of its
deliveries points at it, so the outbox sends objects of any kind the same way.
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

COMPREHENSIVE_3D_SR = '1.2.840.10008.5.1.4.1.1.88.34'


def upgrade() -> None:
    op.create_table(
        'result_objects',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('report_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('sop_class_uid', sa.String(length=64), nullable=False),
        sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
        sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=True),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['report_id'], ['reports.id']),
        sa.ForeignKeyConstraint(['instance_id'], ['instances.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sop_instance_uid'),
    )
    op.create_index(op.f('ix_result_objects_report_id'), 'result_objects', ['report_id'], unique=False)
    op.execute(
        "INSERT INTO result_objects (report_id, kind, sop_class_uid, sop_instance_uid, series_instance_uid, path, created_at) "
        f"SELECT id, 'sr', '{COMPREHENSIVE_3D_SR}', sop_instance_uid, series_instance_uid, path, created_at FROM reports"
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('object_id', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE deliveries SET object_id = (SELECT o.id FROM result_objects o "
        "WHERE o.report_id = deliveries.report_id AND o.kind = 'sr')"
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.alter_column('object_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_deliveries_object_id'), ['object_id'], unique=False)
        batch_op.create_foreign_key('fk_deliveries_object_id_result_objects', 'result_objects', ['object_id'], ['id'])


def downgrade() -> None:
    # Deliveries of result images and presentation states have no place in the older schema.
    op.execute("DELETE FROM deliveries WHERE object_id IN (SELECT id FROM result_objects WHERE kind <> 'sr')")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('fk_deliveries_object_id_result_objects', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_deliveries_object_id'))
        batch_op.drop_column('object_id')
    op.drop_index(op.f('ix_result_objects_report_id'), table_name='result_objects')
    op.drop_table('result_objects')
