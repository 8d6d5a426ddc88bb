"""The indexer's subcommands of the ``multimodal`` console command (see
``multimodal.commands`` for how the console command finds them)."""

COMMANDS = {
    "index": ("indexer.commands.index", "load a data set into Qdrant (incremental, resumable)"),
    "search": ("indexer.commands.search", "search a collection: text, image, or a mix"),
    "search-eval": (
        "indexer.commands.search_eval",
        "measure search modes and suggestions on queries never indexed",
    ),
    "duplicates": (
        "indexer.commands.duplicates",
        "find the photos in a collection that are one picture",
    ),
    "tag": ("indexer.commands.tag", "label a collection's photos with your own words"),
    "calibrate": (
        "indexer.commands.calibrate",
        "fit match probabilities and 'no good match' on a labelled collection",
    ),
    "marks": (
        "indexer.commands.marks",
        "show or export the Good / Not this marks made on a collection",
    ),
    "collections": (
        "indexer.commands.collections",
        "list, describe or drop a store's collections",
    ),
}
