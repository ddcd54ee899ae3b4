// Original file: proto/zds.proto

export const Version = {
  NOT_USED: 'NOT_USED',
  V1: 'V1',
} as const;

export type Version =
  | 'NOT_USED'
  | 0
  | 'V1'
  | 1

export type Version__Output = typeof Version[keyof typeof Version]
