"""The manifest gate, the rollback guard and the tag rules: which tags a compose may move, and
what each index tag gets. Pure."""
