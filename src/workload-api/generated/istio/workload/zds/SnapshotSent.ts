// Original file: proto/zds.proto


export interface SnapshotSent {
}

export interface SnapshotSent__Output {
}
