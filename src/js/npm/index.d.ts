// Types of the package's verbs and their results (the same JSON governance-cli prints).

/** A configuration: its JSON text, or the object itself. */
export type Config = string | object;

/** A configuration problem: its JSON path ("" for the whole document) and what is wrong. */
export interface Problem {
  path: string;
  message: string;
}

/** Thrown when a verb cannot answer (an invalid configuration, request or trace). */
export class GovernanceError extends Error {
  readonly problems: Problem[];
}

export type OwnerKind = 'customer' | 'team' | 'virtual_key' | 'provider_config';
export type LimitKind = 'budget' | 'requests' | 'tokens';

/** A limit and its counter: USD for budgets, counts for requests and tokens. */
export interface LimitEntry {
  owner: OwnerKind;
  id: string;
  kind: LimitKind;
  reset_duration: string;
  calendar_aligned: boolean;
  timezone: string;
  limit: number;
  used: number;
  reserved: number;
  remaining: number;
  /** RFC 3339, UTC. */
  window_start: string;
  window_end: string;
  /** The same bounds as wall-clock time in the limit's zone. */
  window_start_local: string;
  window_end_local: string;
  /** False: never used; a rolling window shown is the one that would open now. */
  in_use: boolean;
  exhausted: boolean;
}

export interface CheckResult {
  valid: boolean;
  /** In the order the filter meets them: the first is the line it logs when refusing. */
  problems: Problem[];
  summary?: {
    namespace: string;
    mode: 'enforce' | 'shadow';
    fleet: boolean;
    customers: number;
    teams: number;
    virtual_keys: number;
    limits: number;
  };
}

export interface OwnerNode {
  owner: OwnerKind;
  id: string;
  limits: LimitEntry[];
  children: OwnerNode[];
  active?: boolean;
  expires_at?: string | null;
  allowed_models?: string[] | null;
  providers?: string[] | null;
  provider?: string;
}

export interface DescribeResult {
  at: string;
  mode: 'enforce' | 'shadow';
  hierarchy: OwnerNode[];
}

/** One request: `key`, `model` and `provider` are shorthands for headers and body. */
export interface RequestSpec {
  /** RFC 3339. */
  time: string;
  key?: string;
  model?: string;
  provider?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** The response's top-level `usage` (simulate), in any provider's shape. */
  usage?: Record<string, unknown>;
  status?: number;
}

export type Decision =
  | {
      admitted: true;
      removed_request_headers: string[];
      response_headers: Record<string, string>;
    }
  | {
      admitted: false;
      status: number;
      type: string;
      message: string;
      headers: Record<string, string>;
    };

export interface ExplainResult {
  time: string;
  mode: 'enforce' | 'shadow';
  request: {
    method: string;
    path: string;
    key_header: string | null;
    provider: string | null;
    model: string | null;
  };
  virtual_key: { id: string; header: string; active: boolean; expires_at: string | null } | null;
  team: string | null;
  customer: string | null;
  provider_config: string | null;
  /** As the request finds them: provider config, key, team, customer. */
  limits: LimitEntry[];
  decision: Decision;
}

export interface SimulateResult {
  mode: 'enforce' | 'shadow';
  requests: number;
  admitted: number;
  refused: number;
  refusals: Record<string, number>;
  shadow_refused?: number;
  spend: { owner: OwnerKind; id: string; usd: number; tokens: number; requests: number }[];
  limits: (LimitEntry & {
    ran_out: { at: string; window_start: string; window_end: string }[];
    /** [time, used] after each request that changed the counter. */
    points: [string, number][];
  })[];
  results: {
    line: number;
    time: string;
    status: number;
    admitted: boolean;
    virtual_key: string | null;
    cost_usd: number;
    tokens: number;
    type?: string;
    message?: string;
  }[];
}

export function check(config: Config): CheckResult;
export function describe(config: Config, at?: Date | string): DescribeResult;
export function explain(
  config: Config,
  request: string | RequestSpec,
  trace?: string | RequestSpec[],
): ExplainResult;
export function simulate(config: Config, trace: string | RequestSpec[]): SimulateResult;
/** Limitador's limits file (YAML) for fleet mode. */
export function limitador(config: Config): string;
