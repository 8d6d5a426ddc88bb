"""The app's subcommands of the ``multimodal`` console command (see ``multimodal.commands``
for how the console command finds them)."""

COMMANDS = {
    "demo": ("ui.commands.demo", "the recipe search page on Recipes5k, in one command"),
    "serve": ("ui.commands.serve", "the search page for an indexed collection"),
}
