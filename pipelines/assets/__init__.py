"""Assets of the `impact` code location, one module per stage of the data flow."""
