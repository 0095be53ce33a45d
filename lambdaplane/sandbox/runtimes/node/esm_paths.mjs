// ES module resolution hook of lambdaplane's Node.js runtime: ES modules do not use NODE_PATH,
// so a bare import (`import {S3Client} from "@aws-sdk/client-s3"`) that the function's own
// node_modules cannot satisfy is looked up in NODE_PATH's directories, in order (layers'
// /opt/nodejs/node_modules, then the runtime's /var/runtime/node_modules), as AWS's runtime
// makes the SDK and layers importable from ES modules. Registered by bootstrap.mjs.
import path from "node:path";
import { pathToFileURL } from "node:url";

let searchDirs = [];

export async function initialize(data) {
  searchDirs = (data && data.nodePath ? data.nodePath.split(":") : []).filter(Boolean);
}

function isBare(specifier) {
  return !specifier.startsWith(".") && !specifier.startsWith("/") && !specifier.includes(":");
}

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (!isBare(specifier) || error.code !== "ERR_MODULE_NOT_FOUND") throw error;
    for (const dir of searchDirs) {
      // resolve as if imported from a file inside `dir`'s parent: node_modules lookup finds it
      const parentURL = pathToFileURL(path.join(path.dirname(dir), "__lambdaplane__.mjs")).href;
      try {
        return await nextResolve(specifier, { ...context, parentURL });
      } catch {
        // not there either: the next directory
      }
    }
    throw error;
  }
}
