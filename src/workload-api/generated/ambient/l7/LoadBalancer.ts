// Original file: proto/l7.proto


export interface _ambient_l7_LoadBalancer_ConsistentHash {
  'httpHeaderName'?: (string);
  'httpCookieName'?: (string);
  'useSourceIp'?: (boolean);
  'httpQueryParameterName'?: (string);
  'key'?: "httpHeaderName"|"httpCookieName"|"useSourceIp"|"httpQueryParameterName";
}

export interface _ambient_l7_LoadBalancer_ConsistentHash__Output {
  'httpHeaderName'?: (string);
  'httpCookieName'?: (string);
  'useSourceIp'?: (boolean);
  'httpQueryParameterName'?: (string);
  'key'?: "httpHeaderName"|"httpCookieName"|"useSourceIp"|"httpQueryParameterName";
}

// Original file: proto/l7.proto

export const _ambient_l7_LoadBalancer_Simple = {
  UNSPECIFIED: 'UNSPECIFIED',
  ROUND_ROBIN: 'ROUND_ROBIN',
  LEAST_REQUEST: 'LEAST_REQUEST',
  RANDOM: 'RANDOM',
} as const;

export type _ambient_l7_LoadBalancer_Simple =
  | 'UNSPECIFIED'
  | 0
  | 'ROUND_ROBIN'
  | 1
  | 'LEAST_REQUEST'
  | 2
  | 'RANDOM'
  | 3

export type _ambient_l7_LoadBalancer_Simple__Output = typeof _ambient_l7_LoadBalancer_Simple[keyof typeof _ambient_l7_LoadBalancer_Simple]

export interface LoadBalancer {
  'simple'?: (_ambient_l7_LoadBalancer_Simple);
  'consistentHash'?: (_ambient_l7_LoadBalancer_ConsistentHash | null);
}

export interface LoadBalancer__Output {
  'simple': (_ambient_l7_LoadBalancer_Simple__Output);
  'consistentHash': (_ambient_l7_LoadBalancer_ConsistentHash__Output | null);
}
