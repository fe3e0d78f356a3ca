import { isDeepStrictEqual } from 'node:util';
import { loadConfig } from '../../src/config/load.ts';

/**
 * Variables a deployment may set on the gateway's container that are not gateway config, each
 * with what reads it. Anything else set there must be read by the config file.
 */
export const NON_CONFIG_GATEWAY_VARIABLES: Record<string, string> = {
  NODE_ENV: 'Node and libraries (production)',
  APPLICATIONINSIGHTS_CONNECTION_STRING: 'Application Insights; not read by the gateway yet (telemetry is planned)',
};

/**
 * The variables of `env` the gateway does not use with this config file: loading the config
 * without the variable gives the same config (neither a `{ env: NAME }` reference nor an override,
 * whatever the override scheme of config/load.ts is). Throws the ConfigError when the config does
 * not load with `env` — an override naming no config key included.
 */
export function unusedGatewayVariables(yamlText: string, env: Record<string, string>, baseDir?: string): string[] {
  const config = loadConfig({ yamlText, env, baseDir });
  return Object.keys(env).filter((name) => {
    if (name in NON_CONFIG_GATEWAY_VARIABLES) return false;
    const { [name]: _, ...without } = env;
    try {
      return isDeepStrictEqual(loadConfig({ yamlText, env: without, baseDir }), config);
    } catch {
      return false;
    }
  });
}
