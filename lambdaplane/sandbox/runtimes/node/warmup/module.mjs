// Imported by the pre-started runtime's warm-up (bootstrap.mjs): the ES module loader's path.
export const warm = true;
