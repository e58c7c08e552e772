// The network helper of the rendezvous: which local address faces rank 0.
import dgram from 'node:dgram';

/**
 * The address of this host on the route to `host` (a connected UDP socket
 * sends nothing), or '' if there is none: 127.0.0.1 on one host. Gloo binds
 * there, so that ranks on other hosts can reach it even where the host name
 * resolves to 127.0.1.1.
 */
export function localAddressTowards(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (address: string): void => {
      socket.close();
      resolve(address);
    };
    socket.on('error', () => done(''));
    socket.connect(port, host, () => {
      try {
        done(socket.address().address);
      } catch {
        done('');
      }
    });
  });
}
