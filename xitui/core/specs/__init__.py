"""What a model spec is and where specs are kept: parsing and validation, the registry of registered
specs, the builtin catalog and the bundled small models, the names they may have."""
