"""The library's subcommands of the ``multimodal`` console command.

``COMMANDS`` maps each name to the module holding its ``main(argv) -> int`` and a one-line
summary; the console command finds this registry through the ``multimodal.commands`` entry
point group, and imports a module only when its command runs, so ``--help`` stays instant.
"""

COMMANDS = {
    "eval": ("multimodal.commands.eval", "recall of a model on a data set, both directions"),
    "embed": ("multimodal.commands.embed", "embed a data set to .npy files plus metadata"),
    "train": ("multimodal.commands.train", "fine-tune with a contrastive loss and hard negatives"),
    "export": ("multimodal.commands.export", "a trained model as a small folder that ships"),
}
