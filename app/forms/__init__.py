"""Forms that more than one surface validates with (pages, JSON API, CLI): each rule lives once."""
