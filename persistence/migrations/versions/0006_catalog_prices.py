"""Catalog and prices: dated prices per product and currency, retired products, invoice lines per daily
price, invoice numbers per year.

Each product's single price moves into product_prices, effective from 2000-01-01 in its currency (USD),
and into the currency of every partner holding it, so existing licenses bill exactly as before.

Revision ID: 0006_catalog_prices
Revises: 0004_payments
"""

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision = "0006_catalog_prices"
down_revision = "0005_payments_hardening"
branch_labels = None
depends_on = None

EARLIEST_PRICE_DATE = "2000-01-01"


def upgrade() -> None:
    op.create_table(
        "product_prices",
        sa.Column("product_slug", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("daily_price_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_slug"], ["products.slug"], name="fk_product_prices_product_slug_products"
        ),
        sa.PrimaryKeyConstraint("product_slug", "currency", "effective_from", name="pk_product_prices"),
        sa.CheckConstraint("daily_price_micros > 0", name="ck_product_prices_positive"),
    )
    earliest = (
        f"DATE '{EARLIEST_PRICE_DATE}'"
        if op.get_bind().dialect.name == "postgresql"
        else f"'{EARLIEST_PRICE_DATE}'"
    )
    op.execute(
        "INSERT INTO product_prices (product_slug, currency, effective_from, daily_price_micros) "
        f"SELECT slug, currency, {earliest}, daily_price_micros FROM products"
    )
    # Partners in another currency holding a product were billed its USD figure as their currency's;
    # that number stays their price (so they keep billing identically) until staff set a real one from an
    # open month on. Without it, their next month close would find no price.
    op.execute(
        "INSERT INTO product_prices (product_slug, currency, effective_from, daily_price_micros) "
        f"SELECT DISTINCT products.slug, partners.currency, {earliest}, products.daily_price_micros "
        "FROM licenses JOIN partners ON partners.id = licenses.partner_id "
        "JOIN products ON products.slug = licenses.product_slug "
        "WHERE partners.currency <> products.currency"
    )
    with op.batch_alter_table("products") as batch:
        batch.drop_column("daily_price_micros")
        batch.drop_column("currency")
        batch.add_column(sa.Column("retired_at", UTCDateTime(), nullable=True))

    # One line per (product, daily price), in the statement's order.
    with op.batch_alter_table("invoice_lines") as batch:
        batch.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_constraint("pk_invoice_lines", type_="primary")
        batch.create_primary_key("pk_invoice_lines", ["invoice_id", "product_slug", "daily_price_micros"])

    # Each day-line names its daily price: before this revision, its product line's only price.
    op.add_column("invoice_day_lines", sa.Column("daily_price_micros", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE invoice_day_lines SET daily_price_micros = ("
        "SELECT invoice_lines.daily_price_micros FROM invoice_lines "
        "WHERE invoice_lines.invoice_id = invoice_day_lines.invoice_id "
        "AND invoice_lines.product_slug = invoice_day_lines.product_slug)"
    )
    with op.batch_alter_table("invoice_day_lines") as batch:
        batch.alter_column("daily_price_micros", existing_type=sa.BigInteger(), nullable=False)

    op.create_table(
        "invoice_number_counters",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name="pk_invoice_number_counters"),
    )


def downgrade() -> None:
    op.drop_table("invoice_number_counters")
    with op.batch_alter_table("invoice_day_lines") as batch:
        batch.drop_column("daily_price_micros")
    # Lines split by a price change cannot be one line per product again: keep each product's first.
    op.execute(
        "DELETE FROM invoice_lines WHERE EXISTS (SELECT 1 FROM invoice_lines AS earlier "
        "WHERE earlier.invoice_id = invoice_lines.invoice_id "
        "AND earlier.product_slug = invoice_lines.product_slug AND earlier.position < invoice_lines.position)"
    )
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_constraint("pk_invoice_lines", type_="primary")
        batch.create_primary_key("pk_invoice_lines", ["invoice_id", "product_slug"])
        batch.drop_column("position")

    # Back to one price per product: its earliest USD price (else its earliest price in any currency).
    with op.batch_alter_table("products") as batch:
        batch.drop_column("retired_at")
        batch.add_column(sa.Column("daily_price_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("currency", sa.String(3), nullable=True))
    earliest = (
        "SELECT {column} FROM product_prices WHERE product_prices.product_slug = products.slug "
        "ORDER BY product_prices.currency <> 'usd', product_prices.effective_from LIMIT 1"
    )
    op.execute(
        "UPDATE products SET "
        f"daily_price_micros = COALESCE(({earliest.format(column='daily_price_micros')}), 0), "
        f"currency = COALESCE(({earliest.format(column='currency')}), 'usd')"
    )
    with op.batch_alter_table("products") as batch:
        batch.alter_column("daily_price_micros", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("currency", existing_type=sa.String(3), nullable=False)
    op.drop_table("product_prices")
