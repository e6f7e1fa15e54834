"""The apps: one job each (demo, accelerate, reproduce, bench, export of a checkpoint),
built on the library's services; `wae.cli` is a thin skin over them."""
