// The child process of verify.ts: loads each model file it is sent the way
// loadModel() does and answers {id, ok} or the error. If libtorch crashes
// on a file, this process dies instead of the parent.
import { binding } from './binding';

interface Request {
  id: number;
  file: string;
}

process.on('message', (request: Request) => {
  void (async () => {
    try {
      const model = await binding().loadModel(request.file, 'cpu', true);
      model.layers();
      model.dispose();
      process.send?.({ id: request.id, ok: true });
    } catch (error) {
      const { code, name, message } = error as { code?: string; name?: string; message?: string };
      process.send?.({ id: request.id, code, name, message });
    }
  })();
});

// The parent went away (it exited, or stopped this child when idle).
process.on('disconnect', () => process.exit(0));
