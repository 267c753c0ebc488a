import ts from 'typescript';
import { defineConfig, type Plugin } from 'vitest/config';

/**
 * Vite 8's Oxc transform strips types but does not lower TC39 decorators
 * (oxc-project/oxc#9170), and Node 20 cannot run them. Files that use one go
 * through TypeScript first, which lowers them exactly as `tsc` does for users.
 */
function lowerDecorators(): Plugin {
  const decorator = /^\s*@[A-Za-z_$]/m;
  return {
    name: 'link-etcd:lower-decorators',
    enforce: 'pre',
    transform(code, id) {
      if (!id.endsWith('.ts') || !decorator.test(code)) return null;
      const out = ts.transpileModule(code, {
        fileName: id,
        compilerOptions: {
          target: ts.ScriptTarget.ES2022,
          module: ts.ModuleKind.ESNext,
          sourceMap: true,
          verbatimModuleSyntax: false,
        },
      });
      return { code: out.outputText, map: out.sourceMapText };
    },
  };
}

export default defineConfig({
  plugins: [lowerDecorators()],
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    // Each file starts its own etcd; two workers keep a 2-core machine responsive.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
