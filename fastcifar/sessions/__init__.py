"""Sessions: a recipe name turned into finished runs (train, resume), and what drives many
of them (ablate, tune, crossval). This layer sits above train/, bench/ and report/."""
