"""The live console, a face of the server like metrics.py: its routes and sessions
(routes.py), the one document it shows (state.py), the page's own files (HTML/JS/CSS) and the
npm manifest of the third-party browser libraries it uses (installed by `make install` into
node_modules/)."""
