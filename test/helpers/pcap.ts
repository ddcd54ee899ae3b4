import { readFile } from 'node:fs/promises';

/**
 * A reader for the classic pcap files tcpdump writes (`-w`): IPv4 TCP segments with their payload, from
 * Ethernet (linktype 1), Linux cooked v1 (113) or v2 (276) captures. Anything else in the file is skipped.
 */

export interface TcpSegment {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly payload: Buffer;
}

const LINK_HEADER: Readonly<Record<number, number>> = { 1: 14, 113: 16, 276: 20 };

export function parsePcap(file: Buffer): TcpSegment[] {
  if (file.length < 24) throw new Error('not a pcap file: shorter than its header');
  const magic = file.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && file.readUInt32BE(0) !== 0xa1b2c3d4 && file.readUInt32BE(0) !== 0xa1b23c4d) throw new Error('not a pcap file: bad magic');
  const u32 = (at: number) => (le ? file.readUInt32LE(at) : file.readUInt32BE(at));
  const linkType = u32(20);
  const linkHeader = LINK_HEADER[linkType];
  if (linkHeader === undefined) throw new Error(`unsupported pcap link type ${linkType}`);
  const segments: TcpSegment[] = [];
  for (let at = 24; at + 16 <= file.length;) {
    const captured = u32(at + 8);
    const frame = file.subarray(at + 16, at + 16 + captured);
    at += 16 + captured;
    const ip = frame.subarray(linkHeader);
    if (ip.length < 20 || ip[0]! >> 4 !== 4 || ip[9] !== 6) continue;
    const ipHeader = (ip[0]! & 0x0f) * 4;
    const total = ip.readUInt16BE(2);
    const tcp = ip.subarray(ipHeader, total);
    if (tcp.length < 20) continue;
    const tcpHeader = (tcp[12]! >> 4) * 4;
    segments.push({
      src: [...ip.subarray(12, 16)].join('.'),
      dst: [...ip.subarray(16, 20)].join('.'),
      sport: tcp.readUInt16BE(0),
      dport: tcp.readUInt16BE(2),
      payload: Buffer.from(tcp.subarray(tcpHeader)),
    });
  }
  return segments;
}

export async function readPcap(path: string): Promise<TcpSegment[]> {
  return parsePcap(await readFile(path));
}
