// The pre-started runtime's own function (bootstrap.mjs warmUp): loaded and invoked once before
// its sandbox is assigned, so that a cold start finds the code it runs compiled already.
exports.handler = async (event, context) => ({ warm: event.warm, remaining: context.getRemainingTimeInMillis() });
