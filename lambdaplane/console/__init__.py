"""The console page's own files (HTML/JS/CSS, served by api/console.py) and the npm manifest
of the third-party browser libraries it uses (installed by `make install` into node_modules/)."""
