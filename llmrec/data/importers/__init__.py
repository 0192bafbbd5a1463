"""Import other recommendation data into an llmrec data folder (the Amazon-M2 file layout,
leave-one-out per user): LC-Rec / TIGER JSON files (`import_lcrec`) or an interaction log CSV
with an item table (`import_csv`)."""

from llmrec.data.importers.csv_log import import_csv
from llmrec.data.importers.folder import MANIFEST, ImportConfig, product_ids
from llmrec.data.importers.lcrec import import_lcrec

__all__ = ["MANIFEST", "ImportConfig", "import_csv", "import_lcrec", "product_ids"]
