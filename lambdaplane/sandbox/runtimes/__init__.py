"""The language runtimes: the Python bootstrap (run by the zygote), the Node.js bootstrap
(node/bootstrap.mjs, exec'd in the sandbox) and the registry of what runs on this host."""
