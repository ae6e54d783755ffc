// A Hugging Face config.json picked in the model form: read and checked in the
// browser only as far as its shape; the server reads its keys (families, MoE refusal).

export interface HfConfigFile {
  config: Record<string, unknown>;
  fileName: string;
  name: string;          // a model name suggested by the config
}

const MAX_BYTES = 1_000_000;

export function readHfConfig(text: string, fileName: string): HfConfigFile | { error: string } {
  if (text.length > MAX_BYTES) return { error: `${fileName} is larger than 1 MB: a config.json is a few kB` };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { error: `${fileName} is not valid JSON: ${(e as Error).message}` };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { error: `${fileName} is not a JSON object` };
  const config = doc as Record<string, unknown>;
  if (typeof config.model_type !== 'string' || !config.model_type) {
    return { error: `${fileName} has no "model_type": it does not look like a Hugging Face config.json` };
  }
  return { config, fileName, name: suggestedName(config) };
}

/** "meta-llama/Llama-2-7b-hf" -> "Llama-2-7b-hf"; else the model type. */
export function suggestedName(config: Record<string, unknown>): string {
  const path = [config._name_or_path, config.name_or_path].find((v) => typeof v === 'string' && v.trim()) as string | undefined;
  if (path) {
    const tail = path.replace(/\/+$/, '').split('/').pop();
    if (tail) return tail;
  }
  return String(config.model_type);
}
