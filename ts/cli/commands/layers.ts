// `torch-cka layers`: a model's named submodules with their types, in
// definition order (the names --layers1 and --layers2 take).
import { loadModel } from '../../model/model';
import { type CommandSpec, helpText, parse, stringValue } from '../args';
import type { Command } from '../command';
import { table } from '../output';

export const LAYERS: CommandSpec = {
  name: 'layers',
  usage: 'torch-cka layers MODEL.pt [--json]',
  summary: "Lists a model's named submodules with their types, in definition order.",
  positionals: { min: 1, max: 1 },
  options: {
    json: { type: 'boolean', description: 'print JSON: [{ "name", "type" }, ...]' },
    device: { type: 'string', value: 'DEV', description: 'device to load the model on (default cpu)' },
  },
};

/** `torch-cka layers MODEL`. */
async function layersCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, LAYERS);
  if (values.help) return void process.stdout.write(helpText(LAYERS));
  const model = await loadModel(positionals[0] as string, { device: stringValue(values, 'device') ?? 'cpu' });
  try {
    const layers = model.layers();
    if (values.json) {
      process.stdout.write(`${JSON.stringify(layers, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${model.name}: ${layers.length} named submodules (${model.path})\n\n`);
    process.stdout.write(`${table([['name', 'type'], ...layers.map((l) => [l.name, l.type])])}\n`);
  } finally {
    model.dispose();
  }
}

export const layers: Command = { spec: LAYERS, run: layersCommand };
