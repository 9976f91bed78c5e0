"""merge the FHIR intake tables (0013) and the per-procedure accession (0014)

Both were made from 0012 on parallel branches; this revision joins the two heads so that
`upgrade head` has one target, whichever of them a database already has.

Revision ID: 0015
Revises: 0013, 0014
"""


revision = '0015'
down_revision = ('0013', '0014')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
